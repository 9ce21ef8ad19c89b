"""Mail: composing from templates/email, digest rendering, DKIM, the SMTP transport, the send rate, the one
delivery step every mail takes, the outbox."""
