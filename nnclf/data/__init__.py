"""The data layer: CSV files to float arrays and back. Its fitted state is plain data."""
