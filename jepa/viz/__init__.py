"""viz subpackage."""
