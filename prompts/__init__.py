"""Prompt templates of autointerp, installed as the package data ``autointerp.prompts``."""
