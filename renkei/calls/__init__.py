"""calls domain."""
