"""Kantoor: mail, calendar, contacts and a document drive over the standard protocols."""

__version__ = "0.1.0"
