"""Raw data generators and datasets, one module per task."""
