"""Ways to reach hardware: serial ports by URL, the optical channel, the bench controller."""
