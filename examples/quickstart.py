import torch

from memoria import Abstractor, Memoria

memoria = Memoria(num_reminded_stm=8, stm_capacity=32, ltm_search_depth=4, initial_lifespan=5, num_final_ltms=8)
abstractor = Abstractor(num_memories=8, hidden_dim=32, feedforward_dim=64)
attention = torch.nn.MultiheadAttention(32, num_heads=4, batch_first=True)

for hidden in torch.randn(6, 2, 16, 32):  # six segments of a model's hidden states: [Batch, Length, Hidden]
    memoria.add_working_memory(abstractor(hidden).detach())  # a summary of this segment: [Batch, 8, Hidden]
    memories, indices = memoria.remind()  # related earlier engrams: [Batch, Reminded, Hidden], [Batch, Reminded]
    gain = torch.zeros(indices.shape)
    if memories.size(1) > 0:  # nothing to remind on the first segment
        attended, weights = attention(hidden, memories, memories)
        hidden = hidden + attended  # the model reads its memories (then its next layers, its loss, ...)
        gain = weights.detach().mean(dim=1) * indices.size(1) * 8.0  # what was attended to lives longer
    memoria.adjust_lifespan_and_memories(indices, gain)  # age and forget the rest

print(memoria.engrams)
