"""User accounts from the command line (the first administrator, scripted set-ups)."""
from __future__ import annotations

import typer

from .. import users
from .base import _database, _run, _settings, users_app


@users_app.command("create")
def users_create(username: str, name: str = typer.Option(..., "--name", help="Printed name for signatures."),
                 role: list[str] = typer.Option(..., "--role", help="Repeat for several roles."),
                 email: str = typer.Option("", "--email", help="Where the notifications for the user's roles go."),
                 password: str = typer.Option(..., prompt=True, hide_input=True, confirmation_prompt=True,
                                              envvar="CELLBENCH_NEW_PASSWORD")) -> None:
    """Create a user (the password is prompted for, or read from CELLBENCH_NEW_PASSWORD)."""
    _run(lambda s: users.create_user(s, users.cli_actor(), username, name, password, role, email=email))
    typer.echo(f"user {username} created with roles {', '.join(role)}")


@users_app.command("roles")
def users_roles(username: str, role: list[str] = typer.Option(..., "--role"),
                reason: str = typer.Option(..., "--reason")) -> None:
    """Replace a user's roles."""
    _run(lambda s: users.set_roles(s, users.cli_actor(), users.by_username(s, username), role, reason))
    typer.echo(f"roles of {username}: {', '.join(role)}")


@users_app.command("deactivate")
def users_deactivate(username: str, reason: str = typer.Option(..., "--reason")) -> None:
    """Deactivate a user (users are never deleted)."""
    _run(lambda s: users.deactivate(s, users.cli_actor(), users.by_username(s, username), reason))
    typer.echo(f"{username} deactivated")


@users_app.command("unlock")
def users_unlock(username: str, reason: str = typer.Option(..., "--reason")) -> None:
    """Unlock an account locked after failed passwords."""
    _run(lambda s: users.unlock(s, users.cli_actor(), users.by_username(s, username), reason))
    typer.echo(f"{username} unlocked")


@users_app.command("link")
def users_link(username: str, site: str = typer.Option("", "--site", help="Site code, e.g. RH-ENT."),
               study: str = typer.Option("", "--study", help="Study code, e.g. NCT07290946.")) -> None:
    """Link a site-role user (pharmacist, preparer, investigator, monitor) to a site or a study."""
    _run(lambda s: users.link(s, users.cli_actor(), users.by_username(s, username), site=site, study=study))
    typer.echo(f"{username} linked to {' and '.join(c for c in (site, study) if c)}")


@users_app.command("unlink")
def users_unlink(username: str, site: str = typer.Option("", "--site"), study: str = typer.Option("", "--study"),
                 reason: str = typer.Option(..., "--reason")) -> None:
    """Take a site or a study from a user."""
    _run(lambda s: users.unlink(s, users.cli_actor(), users.by_username(s, username), site=site, study=study,
                                reason=reason))
    typer.echo(f"{username} unlinked from {' and '.join(c for c in (site, study) if c)}")


@users_app.command("list")
def users_list() -> None:
    """List users with their roles, state, and the sites and studies of site roles."""
    db = _database(_settings())
    with db.read() as session:
        links = users.all_links(session)
        for user, roles in users.all_users(session):
            state = "deactivated" if not user.active else "locked" if user.locked else "active"
            names = ", ".join(sorted(r.value for r in roles))
            where = " ".join(" ".join(codes) for codes in links.get(user.id or 0, ([], [])))
            typer.echo(f"{user.username:<16} {user.full_name:<24} {state:<11} {names}" + (f"  [{where}]" if where
                                                                                          else ""))


@users_app.command("token")
def users_token(username: str, name: str = typer.Argument(..., help="What the token is for.")) -> None:
    """Create an API token for a user and print it once."""
    holder: list[str] = []
    _run(lambda s: holder.append(users.create_token(s, users.cli_actor(), users.by_username(s, username), name)))
    typer.echo(holder[0])

