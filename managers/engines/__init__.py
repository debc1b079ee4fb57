"""The engines: Tesseract on the CPU (tesseract.py), any OpenAI-compatible server such as a
managed vLLM container (openai.py), and a Transformers model in this process (local.py).
Which one reads a document is the runner's choice (managers/runs.py)."""
