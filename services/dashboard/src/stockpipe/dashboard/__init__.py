"""stockpipe dashboard service."""
