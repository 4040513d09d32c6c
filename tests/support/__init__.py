"""Test helpers shared by the suite: real components, named users."""
