import torch

from memoria.nn import MemoriaLayer, reset_memory

# MemoriaLayer(width, heads, working memories written per segment, **Memoria's sizes): one layer of your model
sizes = dict(num_reminded_stm=8, stm_capacity=32, ltm_search_depth=4, initial_lifespan=5, num_final_ltms=8)
model = torch.nn.Sequential(torch.nn.Embedding(100, 32), MemoriaLayer(32, 4, 8, **sizes), torch.nn.Linear(32, 100))
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)  # the memory's write and read train with the model
for documents in torch.randint(0, 100, (3, 2, 6 * 16)):  # 3 batches of 2 documents, 6 segments of 16 tokens each
    reset_memory(model)  # new documents: forget the previous ones
    for tokens in documents.split(16, dim=1):  # one segment [B, L] at a time, in order
        logits = model(tokens)  # the layer writes the previous segment, reminds, reads, and adjusts lifespans
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
print(f"loss {loss.item():.3f}; the memory holds {model[1].memory.memoria.memory_length} engrams per document")
