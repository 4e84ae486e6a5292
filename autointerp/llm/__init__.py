"""LLM backends behind one small interface, and the queue that drives them.

``make_backend`` imports a backend's library only when that backend is chosen.
"""
