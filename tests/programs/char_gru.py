"""Character-level RNN classifier/generator (the char-RNN tutorials, with nn.GRU): Embedding, 2-layer GRU, Linear
over every time step, CrossEntropyLoss, Adam, gradient clipping."""


def build_models(torch):
    nn = torch.nn

    class CharRNN(nn.Module):
        def __init__(self, n_chars=30, hidden_size=24, n_layers=2):
            super().__init__()
            self.embed = nn.Embedding(n_chars, 12)
            self.gru = nn.GRU(12, hidden_size, n_layers, batch_first=True)
            self.fc = nn.Linear(hidden_size, n_chars)
            self.n_layers, self.hidden_size = n_layers, hidden_size

        def forward(self, x, hidden=None):
            if hidden is None:
                hidden = torch.zeros(self.n_layers, x.size(0), self.hidden_size)
            out, hidden = self.gru(self.embed(x), hidden)
            return self.fc(out), hidden

    return {"model": CharRNN()}


def make_step(torch, models):
    model = models["model"]
    criterion = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)

    def train_step(inp, target):
        optimizer.zero_grad()
        output, _ = model(inp)
        loss = criterion(output.reshape(-1, output.size(-1)), target.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        return loss

    return train_step


def make_data(torch):
    text = torch.randint(0, 30, (18, 9))
    return [(text[i:i + 6, :-1], text[i:i + 6, 1:]) for i in range(0, 18, 6)]
