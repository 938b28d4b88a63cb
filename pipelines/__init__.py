"""Prefect flows: thin wrappers that call one ``autoenc`` library function per step."""
