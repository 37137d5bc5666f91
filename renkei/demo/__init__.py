"""The demo network: organisations and patients for the README's five-minute tour."""

from renkei.demo.seed import seed_demo

__all__ = ["seed_demo"]
