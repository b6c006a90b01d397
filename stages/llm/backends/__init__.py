"""Where samples come from: `openai_backend` (any OpenAI-compatible endpoint) and `vllm_backend` (offline GPU engine)."""
