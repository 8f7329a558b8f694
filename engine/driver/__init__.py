"""The driver (player): capture, one forward pass with Convcam, controller, unstuck, eval."""
