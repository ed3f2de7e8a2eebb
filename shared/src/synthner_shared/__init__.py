"""synthner's shared library: message contracts, document I/O and the RabbitMQ messaging layer."""

__version__ = "0.1.0"
