import torch
import torch.nn as nn

from memoria import Abstractor, Memoria

batch, segment, hidden, heads, num_working = 2, 16, 32, 4, 8
lifespan_extend_scale = 8.0

embed = nn.Embedding(100, hidden)
abstractor = Abstractor(num_memories=num_working, hidden_dim=hidden, feedforward_dim=64)
cross_attention = nn.MultiheadAttention(hidden, heads, batch_first=True)
memoria = Memoria(num_reminded_stm=8, stm_capacity=32, ltm_search_depth=4, initial_lifespan=5, num_final_ltms=8)
optimizer = torch.optim.AdamW([*embed.parameters(), *abstractor.parameters(), *cross_attention.parameters()])

tokens = torch.randint(0, 100, (batch, 6 * segment))
previous_hidden = None
for start in range(0, tokens.size(1), segment):
    hidden_states = embed(tokens[:, start : start + segment])  # [Batch, Segment, Hidden]
    if previous_hidden is not None:
        # 1. the previous segment, abstracted, becomes this step's working memories: [Batch, NumWorking, Hidden]
        memoria.add_working_memory(abstractor(previous_hidden.detach()).detach())
    # 2. remind: [Batch, NumReminded, Hidden] memories (no gradient) and their indices
    memories, indices = memoria.remind()
    if memories.size(1) > 0:
        # 3. cross-attention from the segment over the reminded memories
        attended, weights = cross_attention(hidden_states, memories, memories)  # weights: [Batch, Segment, NumReminded]
        hidden_states = hidden_states + attended
        # 4. lifespan gain = attention each memory received, averaged over positions, x number reminded x scale
        lifespan_delta = weights.detach().mean(dim=1) * indices.size(1) * lifespan_extend_scale
    else:
        lifespan_delta = torch.zeros(indices.shape)
    # 5. reward the memories that were used, age the rest
    memoria.adjust_lifespan_and_memories(indices, lifespan_delta)

    loss = hidden_states.pow(2).mean()  # stands in for the model's loss
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    previous_hidden = hidden_states

print(memoria.engrams)
