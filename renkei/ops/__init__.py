"""Operations: backup, restore and verification of a renkei database."""

from renkei.ops.backup import (
    BackupError,
    create_backup,
    prune_generations,
    restore_backup,
    verify_backup,
)

__all__ = ["BackupError", "create_backup", "prune_generations", "restore_backup", "verify_backup"]
