"""Mail that answers back: bounces (DSNs), complaints (ARF), mailto unsubscribes."""
