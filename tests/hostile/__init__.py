"""Hostile input for every topic a service reads: :mod:`hostile.corpus`."""
