"""stockpipe forecaster service."""
