"""One blinded presentation per study: a study whose arms' specifications do not present exactly as
its [presentation] says is refused at load and its kit list at sealing, naming the difference; the
cold chain and the preparation clock come from the presentation, never from one arm's specification."""
from __future__ import annotations

import re
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from cellbench import custody, pharmacy, studies, users
from cellbench.custody import LoggerRecord
from cellbench.errors import InvalidInput
from cellbench.models import Kit, SealedList, SpecVersion
from cellbench.specifications import specs_root
from cellbench.specifications import versions as spec_versions
from cellbench.supply import lists

from ..conftest import PASSWORD, actor_of

STUDY = "NCT07290946"


def copied_specs(tmp_path: Path) -> Path:
    root = tmp_path / "specs"
    shutil.copytree(specs_root(), root)
    return root


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path.name}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def load(db, root: Path) -> list:
    with db.write() as s:
        return studies.sync_from_files(s, actor_of(db, "sara"), root=root)


def test_the_shipped_studies_load_because_both_arms_present_as_the_study_says(db, people):
    loaded = load(db, specs_root())
    assert sorted(study.code for study in loaded) == ["NCT06805448", STUDY]
    with db.read() as s:
        shared = studies.definition(studies.by_code(s, STUDY)).presentation
    assert (shared.container, shared.fill_volume_ml, shared.vials_per_kit, shared.storage_max_c) == (
        "Closed-system cryovial, 2 mL", 1.0, 2, -150.0)
    assert shared.manufacturer == "OUH Cell Bench, Odense, Denmark"


def test_a_study_whose_presentation_differs_from_its_arms_is_not_loaded_and_the_error_names_the_difference(
        db, people, tmp_path):
    root = copied_specs(tmp_path)
    edit(root / "studies" / f"{STUDY}.toml", "storage_max_c = -150.0", "storage_max_c = -80.0")
    with pytest.raises(InvalidInput) as refused:
        load(db, root)
    message = refused.value.message
    assert refused.value.field == "study_file" and f"studies/{STUDY}.toml: presentation" in message
    assert "arm 'active' (asc-cs10 v2) has storage_max_c -150.0 where the study's presentation has -80.0" in message
    assert "arm 'placebo' (saline-placebo v2) has storage_max_c -150.0" in message
    with db.read() as s:
        assert studies.all_studies(s) == [], "nothing loaded from a set with a refused study"


def test_a_placebo_still_on_ampoules_at_room_temperature_cannot_serve_a_study(db, people, tmp_path):
    root = copied_specs(tmp_path)
    (root / "saline-placebo" / "v2.toml").unlink()  # only v1: 10 mL ampoules, 15-25 °C
    with pytest.raises(InvalidInput) as refused:
        load(db, root)
    assert "arm 'placebo' (saline-placebo v1) declares no presentation" in refused.value.message


def test_a_placebo_that_no_longer_presents_as_the_active_product_stops_the_study_loading(db, people, tmp_path):
    root = copied_specs(tmp_path)
    edit(root / "saline-placebo" / "v2.toml", 'thaw = "5 min in a 37 °C sterile water bath"',
         'thaw = "none: room temperature"')
    with pytest.raises(InvalidInput) as refused:
        load(db, root)
    assert "saline-placebo/v2.toml: presentation.thaw" in refused.value.message
    assert str(tmp_path) not in refused.value.message, "the server's folders are not shown"


def _new_versions_with_another_fill(db, tmp_path) -> None:
    """QA approves v3 of both products, both filled at 1.5 mL: they agree with each other (so they
    load), but no longer with the studies' presentation (1.0 mL)."""
    root = copied_specs(tmp_path)
    for product in ("asc-cs10", "saline-placebo"):
        v3 = root / product / "v3.toml"
        shutil.copy(root / product / "v2.toml", v3)
        edit(v3, "version = 2", "version = 3")
        edit(v3, "fill_volume_ml = 1.0", "fill_volume_ml = 1.5")
    with db.write() as s:
        loaded = spec_versions.sync_from_files(s, actor_of(db, "anna"), root)
        new = [row.id for row in loaded if row.version == 3]
    for spec_id in new:
        with db.write() as s:
            spec_versions.approve(s, users.by_username(s, "anna"), PASSWORD, spec_id)


def test_a_kit_list_is_not_sealed_while_the_effective_specifications_present_otherwise(db, effective_specs,
                                                                                      tmp_path):
    load(db, specs_root())
    with db.write() as s:
        row = lists.generate(s, actor_of(db, "sara"), studies.by_code(s, STUDY), "kit", 8, seed="p", block_sizes="2")
        list_id = row.id
    _new_versions_with_another_fill(db, tmp_path)
    with pytest.raises(InvalidInput) as refused, db.write() as s:
        sara = users.by_username(s, "sara")
        lists.seal(s, sara, users.actor(s, sara), s.get(SealedList, list_id), PASSWORD)
    message = refused.value.message
    assert refused.value.field == "presentation" and message.startswith(f"{STUDY} cannot have a list sealed")
    assert "arm 'active' (asc-cs10 v3) has fill_volume_ml 1.5 where the study's presentation has 1.0" in message
    assert "arm 'placebo' (saline-placebo v3) has fill_volume_ml 1.5" in message
    with db.read() as s:
        assert s.get(SealedList, list_id).state == "draft" and s.scalar(select(func.count()).select_from(Kit)) == 0
    # the same study file now refuses to load again too: one rule, two doors
    with pytest.raises(InvalidInput) as reload:
        root = tmp_path / "specs"
        load(db, root)
    assert "fill_volume_ml 1.5" in reload.value.message


def test_the_kit_list_seals_while_they_agree(db, effective_specs):
    load(db, specs_root())
    with db.write() as s:
        row = lists.generate(s, actor_of(db, "sara"), studies.by_code(s, STUDY), "kit", 4, seed="p", block_sizes="2")
        list_id = row.id
    with db.write() as s:
        sara = users.by_username(s, "sara")
        lists.seal(s, sara, users.actor(s, sara), s.get(SealedList, list_id), PASSWORD)
    with db.read() as s:
        assert s.get(SealedList, list_id).state == "sealed" and s.scalar(select(func.count()).select_from(Kit)) == 4
        effective = {row.product_code: row.version for row in s.scalars(select(SpecVersion))
                     if row.status == "effective"}
    assert effective == {"asc-cs10": 2, "saline-placebo": 2}


# --- what is derived from the presentation ------------------------------------------------------------------


def test_the_cold_chain_and_the_use_window_are_the_studys_presentation(db, people, tmp_path):
    root = copied_specs(tmp_path)
    # a study whose shipper is validated for 3 days and whose clock runs 45 min, both arms alike
    for old, new in (("transport_hold_days = 7", "transport_hold_days = 3"),
                     ("use_window_minutes = 60 ", "use_window_minutes = 45 ")):
        edit(root / "studies" / "NCT06805448.toml", old, new)
    with pytest.raises(InvalidInput):  # 45 min is not what the specifications say: refused
        load(db, root)
    edit(root / "studies" / "NCT06805448.toml", "use_window_minutes = 45 ", "use_window_minutes = 60 ")
    load(db, root)
    with db.read() as s:
        long, sjogren = studies.by_code(s, STUDY), studies.by_code(s, "NCT06805448")
        chain, other = custody.cold_chain(long), custody.cold_chain(sjogren)
        assert pharmacy.use_window(long) == timedelta(minutes=60) == pharmacy.use_window(sjogren)
    assert (chain.storage, chain.storage_max_c, chain.transport_max_c, chain.hold) == (
        "≤ −150 °C, vapour-phase liquid nitrogen", -150.0, -150.0, timedelta(days=7))
    assert other.hold == timedelta(days=3)
    four_days = 4 * 24 * 60
    assert custody.transit_beyond_hold_time(True, LoggerRecord("manual", -190, -170), four_days, chain) is None
    assert "validated 4320 minutes" in custody.transit_beyond_hold_time(
        True, LoggerRecord("manual", -190, -170), four_days, other)
    warm = LoggerRecord("manual", -190, -140)
    assert custody.temperature_excursion(True, warm, 60, chain) == (
        "the temperature reached -140 °C, above the -150 °C limit")


def test_no_code_reads_the_window_or_the_cold_chain_from_one_arms_specification():
    """The former shortcuts (the ASC specification's window, a fixed −150 °C alarm) are gone."""
    root = Path(__file__).resolve().parents[2] / "cellbench"
    for relative in ("pharmacy/records.py", "custody/temperature.py", "labels/sheets.py", "labels/printing.py"):
        text = (root / relative).read_text(encoding="utf-8")
        assert not re.search(r"asc-cs10|saline-placebo|spec_versions|ALARM_LIMIT|VALIDATED_HOLD", text), relative
    assert "Store at ≤~−150~°C" not in (root / "labels" / "sheets.py").read_text(encoding="utf-8")


def test_a_saline_lot_made_under_v1_ampoules_cannot_fill_kits_of_a_study_presented_in_cryovials(db, kit_world):
    """Packaging applies the study's one presentation rule to each chosen lot, under the version the
    lot was made under: a released saline v1 (10 mL ampoule) lot is refused, naming the difference;
    a v2 (mirror fill) lot of the same run fills kits as before."""
    from cellbench.models import Lot, LotState
    from cellbench.supply import packaging

    from ..kitworld import released_lot, sealed_kit_list

    ampoules = released_lot(db, "placebo", "PLB-2026-0901")
    with db.write() as s:
        v1 = s.scalars(select(SpecVersion).where(SpecVersion.product_code == "saline-placebo",
                                                 SpecVersion.version == 1)).one()
        s.scalars(select(Lot).where(Lot.number == ampoules)).one().spec_version_id = v1.id
    mirror = released_lot(db, "placebo", "PLB-2026-0902")
    active = released_lot(db, "asc", "ASC-2026-0902")
    sealed_kit_list(db, STUDY, 4, seed="presentation")
    with db.write() as s:
        study, before = studies.by_code(s, STUDY), s.scalar(select(func.count()).select_from(Kit))
        with pytest.raises(InvalidInput) as refused:
            packaging.package(s, actor_of(db, "sara"), study, kit_count=4, asc_lots=[active],
                              placebo_lots=[mirror, ampoules])
        assert s.scalar(select(func.count()).select_from(Kit)) == before
        assert LotState(s.scalars(select(Lot).where(Lot.number == ampoules)).one().state) is LotState.released
    assert refused.value.field == "placebo_lots"
    assert refused.value.message.startswith(f"Lot {ampoules} cannot fill kits of {STUDY}: arm 'placebo' "
                                            "(saline-placebo v1) declares no presentation")
    with db.write() as s:
        run = packaging.package(s, actor_of(db, "sara"), studies.by_code(s, STUDY), kit_count=4, asc_lots=[active],
                                placebo_lots=[mirror])
        assert run.number
