"""Protocol adapters: one folder per protocol behind the interface in ``adapters.base``."""
