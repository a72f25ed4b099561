"""Engine metrics: parse and scrape vLLM, SGLang and TensorRT-LLM /metrics into core samples."""
