"""Lightning modules and data modules, one module per task; each exposes ``build(config)``."""
