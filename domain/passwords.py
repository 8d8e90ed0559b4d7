"""The password policy (reference §2.1): 8..128 characters with a digit, an upper- and a lower-case letter."""

MIN_LENGTH = 8
MAX_LENGTH = 128


def is_strong_password(password: str) -> bool:
    return (
        MIN_LENGTH <= len(password) <= MAX_LENGTH
        and any(c.isdigit() for c in password)
        and any(c.isupper() for c in password)
        and any(c.islower() for c in password)
    )
