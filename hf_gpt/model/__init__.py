"""The model itself, and all of it that ships to the Hub as remote code: these four files import only torch,
transformers, huggingface_hub and each other, so a saved folder works where hf_gpt is not installed."""
