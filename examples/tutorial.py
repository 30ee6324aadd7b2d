"""The Memoria tutorial: add working memories, remind, adjust lifespans, and watch engrams move between stages."""

import torch

from memoria import EngramType, Memoria

# 1. Import Memoria and set parameters
torch.manual_seed(42)
num_reminded_stm, stm_capacity, ltm_search_depth, initial_lifespan, num_final_ltms = 4, 16, 5, 3, 4
batch_size, sequence_length, hidden_dim = 2, 8, 64

# 2. Initialise Memoria and dummy data
memoria = Memoria(
    num_reminded_stm=num_reminded_stm,
    stm_capacity=stm_capacity,
    ltm_search_depth=ltm_search_depth,
    initial_lifespan=initial_lifespan,
    num_final_ltms=num_final_ltms,
)
data = torch.rand(batch_size, sequence_length, hidden_dim)

# 3. Add data as working memory
memoria.add_working_memory(data)
print("## step 3: add working memory")
print(len(memoria.engrams))
print(memoria.engrams.data.shape)
print(memoria.engrams.lifespan)

# 4. Remind memories: nothing yet, there are no short-term or long-term engrams
reminded_memories, reminded_indices = memoria.remind()
print("## step 4: remind")
print(reminded_memories)
print(reminded_indices)

# 5. Adjust lifespan and memories: every engram gets older, working memories become short-term
memoria.adjust_lifespan_and_memories(reminded_indices, torch.zeros_like(reminded_indices))
print("## step 5: adjust")
print(memoria.engrams.lifespan)
print(memoria.engrams.engrams_types)
print(repr(EngramType.SHORTTERM))

# 6. Repeat once: now short-term engrams can be reminded
data2 = torch.rand(batch_size, sequence_length, hidden_dim)
memoria.add_working_memory(data2)
print("## step 6: add, remind, adjust")
print(len(memoria.engrams))
print(memoria.engrams.lifespan)
reminded_memories, reminded_indices = memoria.remind()
print(reminded_memories.shape)
print(reminded_indices.shape)
print(reminded_indices)
memoria.adjust_lifespan_and_memories(reminded_indices, torch.full_like(reminded_indices, 5))
print(memoria.engrams.lifespan)

# 7. Repeat ten times to see long-term memory form
for _ in range(10):
    data = torch.rand(batch_size, sequence_length, hidden_dim)
    memoria.add_working_memory(data)
    reminded_memories, reminded_indices = memoria.remind()
    lifespan_delta = torch.randint_like(reminded_indices, 0, 6).float()
    memoria.adjust_lifespan_and_memories(reminded_indices, lifespan_delta)
print("## step 7: ten more steps")
print(len(memoria.engrams))
print(memoria.engrams.engrams_types)
print(memoria.engrams.lifespan)

# 8. Inside a model, memoria.nn runs these calls for you, once per segment: examples/quickstart.py (one layer) and
#    examples/model_loop.py (a model that reads memory at two layers, trained on padded documents); docs/model.md
