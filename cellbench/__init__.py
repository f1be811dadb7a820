"""cellbench: batch record, release and blinded supply for an allogeneic ASC product."""
