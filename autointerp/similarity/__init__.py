"""Similarity of latents by meaning and by direction: explanation embeddings, search, SAE comparison.

A layer between the stages and the ground floor: it reads and writes the store and embeds text with
``models.sentence_encoder``; the front ends (CLI, query API, browser, notebook) call it.
"""
