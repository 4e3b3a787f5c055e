"""The embedded AWS: moto's server on 127.0.0.1 plus a local Lambda runtime for both handlers."""
