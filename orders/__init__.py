"""Orders: what customers buy, the purchase saga that fulfils it, and shipments."""
