"""Randomisation and kit lists: the supply manager generates one from a seed or imports a CSV,
checks the draft, then seals it with a signature. The lines go straight into the sealed
compartment; this module hands them over and keeps none."""
from __future__ import annotations

from collections.abc import Callable

from sqlmodel import Session

from .. import identifiers, inputs, sealed, studies, users
from ..audit import Actor
from ..errors import InvalidInput
from ..models import Role, Study, User
from ..specifications import Specification, load_all
from ..specifications import versions as spec_versions
from . import randomisation

MAKERS = (Role.supply_manager,)


def _size(value: object, field: str = "size") -> int:
    size = inputs.whole(value, field, "number of entries")
    if not 1 <= size <= randomisation.MAX_LIST_SIZE:
        raise InvalidInput(f"A list holds 1 to {randomisation.MAX_LIST_SIZE} entries.", field=field)
    return size


def _arms(study: Study) -> list[tuple[str, int]]:
    return [(arm.code, arm.ratio) for arm in studies.definition(study).arms]


def _block_sizes(study: Study, text: str | None) -> tuple[int, ...]:
    if not (text or "").strip():
        return studies.definition(study).randomisation.block_sizes
    try:
        return tuple(int(part) for part in (text or "").replace(" ", "").split(",") if part)
    except ValueError:
        raise InvalidInput("Block sizes are whole numbers separated by commas, e.g. 2,4,6.",
                           field="block_sizes") from None


def _seed(text: str | None) -> str:
    seed = (text or "").strip() or randomisation.new_seed()
    if len(seed) > 64:
        raise InvalidInput("A seed is at most 64 characters.", field="seed")
    return seed


def generate(session: Session, actor: Actor, study: Study, kind: str, size: object, *, seed: str | None = None,
             block_sizes: str | None = None) -> sealed.ListHeader:
    """A draft list in permuted blocks; the same seed, size and blocks give the same list again."""
    users.require_role(actor, *MAKERS)
    count, chosen_seed, blocks = _size(size), _seed(seed), _block_sizes(study, block_sizes)
    if kind == "randomisation":
        start = sealed.next_participant_start(session, actor, study)
        lines = randomisation.randomisation_lines(chosen_seed, count, _arms(study), blocks,
                                                  studies.definition(study).study.participant_prefix, start)
    elif kind == "kit":
        # whole blocks, as a randomisation list: the last block is never cut short (uneven arms)
        size = randomisation.whole_blocks(chosen_seed, count, _arms(study), blocks)
        numbers = identifiers.new_kit_numbers(size, lambda number: sealed.kit_number_taken(session, number))
        lines = randomisation.kit_lines(chosen_seed, numbers, _arms(study), blocks)
    else:
        raise InvalidInput("A list is a randomisation list or a kit list.", field="kind")
    return sealed.create_list(session, actor, study, kind, lines, method="generated", seed=chosen_seed,
                              block_sizes=blocks, asked=count)


def generated_notice(row: sealed.ListHeader, asked: object) -> str:
    """What the supply manager is told after generating a draft, including that it was rounded
    up to whole blocks when it was."""
    what = f"Draft {sealed.LIST_KINDS[row.kind]} version {row.version} generated"
    try:
        wanted = int(str(asked).strip())
    except ValueError:
        wanted = row.size
    if wanted != row.size:
        what += (f" with {row.size} entries, not {wanted}: permuted blocks are never cut short, so the list was "
                 f"rounded up to whole blocks")
    return f"{what}: check it, then seal it."


def _lots_made_under(session: Session) -> Callable[[str], Specification | None]:
    """A product's effective specification (what its lots are now made under); before QA approves
    one, the latest file, as the study's load checked."""
    files: dict[str, Specification] = {}

    def spec_of(code: str) -> Specification | None:
        try:
            return spec_versions.parsed(spec_versions.effective(session, code))
        except InvalidInput:
            files.update(files or {spec.product.code: spec for spec in load_all()})
            return files.get(code)
    return spec_of


def seal(session: Session, user: User, actor: Actor, row: sealed.ListHeader, password: str) -> sealed.ListHeader:
    """Seal a list; a kit list only while the study's arms present alike under the specifications
    lots are now made under, for its kits come into being when it is sealed."""
    users.require_role(actor, *MAKERS)
    study = studies.by_id(session, row.study_id)
    definition = studies.definition(study)
    if row.kind == "kit" and (why := studies.presentation_mismatch(definition, _lots_made_under(session))):
        raise InvalidInput(f"{study.code} cannot have a list sealed: {why}.", field="presentation")
    return sealed.seal_list(session, user, actor, row, password)


def import_csv(session: Session, actor: Actor, study: Study, kind: str, text: str) -> sealed.ListHeader:
    users.require_role(actor, *MAKERS)
    if kind not in sealed.LIST_KINDS:
        raise InvalidInput("A list is a randomisation list or a kit list.", field="kind")
    lines = randomisation.parse_csv(text, kind, studies.arm_codes(study))
    return sealed.create_list(session, actor, study, kind, lines, method="imported",
                              source_sha256=randomisation.sha256_text(text))
