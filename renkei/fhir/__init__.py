"""The FHIR engine, framework-free: validation, interactions, bundles, search."""
