"""renkei (連携): a FHIR R4 backend for Japanese home-care networks."""

__version__ = "0.1.0"
__all__ = ["__version__"]
