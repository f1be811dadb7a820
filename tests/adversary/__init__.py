"""The adversarial blinding test (issue 12): a simulated trial (`simulation`), what the blinded
roles saw of it (`observations`), and the predictors that try to guess arms from it (`predictors`)."""
