"""File contracts between the pipeline's stages: one module per file format.

Each module names the columns (or npz keys), writes the file and reads it back with
validation, so the writer and every reader share one definition. Readers raise
`ContractError` with the file, row and column at fault.
"""
from percept.contracts.tables import ContractError, InputError

__all__ = ["ContractError", "InputError"]
