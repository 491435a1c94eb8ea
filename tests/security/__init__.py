"""Hostile inputs: crafted bundles, HTTP bodies, CSV lists, output paths, data (issue 25)."""
