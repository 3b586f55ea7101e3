"""The text service: clinicians' sentences → intent; texts and class prompts → embeddings."""
