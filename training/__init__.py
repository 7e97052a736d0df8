"""Offline training and evaluation. Imports :mod:`codeFeature`; never imported by it."""
