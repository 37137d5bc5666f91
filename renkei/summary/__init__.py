"""Patient summaries (患者サマリー): the document every member of the care team trusts."""

from renkei.summary.document import SectionContent, build_summary
from renkei.summary.sections import SECTIONS, SectionSpec

__all__ = ["SECTIONS", "SectionContent", "SectionSpec", "build_summary"]
