"""FHIR search: definitions, index extraction, query parsing and SQL."""
