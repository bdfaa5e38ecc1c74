"""world subpackage."""
