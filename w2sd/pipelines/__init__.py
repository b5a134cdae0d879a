# W2SD on diffusers pipelines: adapters to the core ε-callables, loading, MoE routing and the one-call entry point.
from w2sd.pipelines.adapters import Conditioning, ModelSetting, PipelineDenoiser
from w2sd.pipelines.entry import w2sd_generate

__all__ = ["Conditioning", "ModelSetting", "PipelineDenoiser", "w2sd_generate"]
