"""The served path: a ``.nk`` bitstream -> latent -> neck -> the MLLM's encoder -> answer.

- :mod:`neckkit.serving.machine_path`: rebuilding the neck's codec and encoder, fingerprint checks;
"""
