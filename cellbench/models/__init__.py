"""Tables and enums by area, re-exported: `from cellbench.models import Lot`.

Importing this package registers every table on SQLModel.metadata (migrations and `init` rely on it).
The sealed compartment's tables are all in `sealed.py`, and nowhere else.
"""

from __future__ import annotations

from .accountability import (
    AccountabilityVerification,
    Destruction,
    DestructionKit,
    Reconciliation,
)
from .audit import (
    AuditCheckpoint,
    AuditEvent,
    AuditHead,
    AuditReview,
    Signature,
)
from .base import (
    BLINDED_ROLES,
    UTC_FORMAT,
    Meaning,
    Role,
    UTCTimestamp,
    Visibility,
    parse_utc_text,
    saved_id,
    utc_text,
)
from .bedside import (
    BedsideCheck,
)
from .counts import (
    KitCount,
    PlaceCount,
    PlaceLotCount,
    StorageCount,
    UnpackagedCount,
)
from .custody import (
    CustodyEvent,
    KitPosition,
    LoggerReading,
    Shipment,
    ShipmentKit,
    StorageBox,
    StorageLocation,
)
from .deviations import (
    Deviation,
    DeviationState,
)
from .donors import (
    Donation,
    Donor,
    DonorTest,
    Eligibility,
)
from .kits import (
    Kit,
    KitQuarantine,
    KitQuarantineKit,
    KitState,
    LabelRun,
    LabelRunKit,
    PackagingRun,
)
from .lots import (
    EquipmentUse,
    Lot,
    LotState,
    MaterialUse,
    StepDraft,
    StepEntry,
    StepState,
    StepValue,
    Vial,
    VialState,
)
from .materials import (
    Equipment,
    MaterialLot,
    MaterialStatus,
)
from .pharmacy import (
    Administration,
    EligibilityRecord,
    Notification,
    Participant,
    Preparation,
    PreparationSyringe,
    PreparationUnit,
    Unblinding,
    Visit,
    VisitCount,
)
from .release import (
    LotDecision,
    LotReview,
    PendingTest,
    QcResult,
    QcReviewSet,
    QcReviewSetMember,
    StorageExcursion,
)
from .resupply import (
    ResupplyProposal,
    ResupplyProposalKit,
    ResupplySetting,
    StockNote,
)
from .sealed import (
    SealedAllocation,
    SealedDoseDonor,
    SealedKitArm,
    SealedKitDraw,
    SealedKitShortage,
    SealedKitUnit,
    SealedList,
    SealedListArm,
)
from .specifications import (
    SpecStatus,
    SpecVersion,
)
from .studies import (
    BlindedLot,
    Site,
    Study,
    StudyLock,
    StudySite,
)
from .users import (
    ApiToken,
    SigninAttempt,
    User,
    UserRole,
    UserSite,
    UserStudy,
    WebSession,
)
