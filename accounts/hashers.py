"""Hasher for machine-generated secrets (client secrets).

Client secrets are 48 random bytes, so brute force is hopeless whatever the work factor; the
default PBKDF2 work factor (tuned for human passwords) would make every token request cost
~300 ms of CPU. This keeps PBKDF2-SHA256 with a work factor fit for high-entropy input.
"""

from django.contrib.auth.hashers import PBKDF2PasswordHasher


class HighEntropySecretHasher(PBKDF2PasswordHasher):
    algorithm = "pbkdf2_sha256_secret"
    iterations = 5_000
