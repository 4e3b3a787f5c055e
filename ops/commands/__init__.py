"""click commands, grouped by domain; each stays thin and calls one library function."""
