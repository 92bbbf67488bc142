"""Infrastructure every stage shares and that imports no stage."""
