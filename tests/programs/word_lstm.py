"""Word-level language model (pytorch/examples word_language_model, LSTM): Embedding, LSTM, tied decoder,
truncated BPTT with the hidden state (kept on the model) detached between batches, gradient clipping, plain SGD."""


def build_models(torch):
    nn = torch.nn

    class RNNModel(nn.Module):
        def __init__(self, ntoken=50, ninp=16, nhid=16, nlayers=2):
            super().__init__()
            self.encoder = nn.Embedding(ntoken, ninp)
            self.rnn = nn.LSTM(ninp, nhid, nlayers)
            self.decoder = nn.Linear(nhid, ntoken)
            self.decoder.weight = self.encoder.weight
            self.nlayers, self.nhid = nlayers, nhid
            initrange = 0.1
            nn.init.uniform_(self.encoder.weight, -initrange, initrange)
            nn.init.zeros_(self.decoder.bias)

        def forward(self, input, hidden):
            emb = self.encoder(input)
            output, hidden = self.rnn(emb, hidden)
            decoded = self.decoder(output).view(-1, self.decoder.out_features)
            return torch.nn.functional.log_softmax(decoded, dim=1), hidden

        def init_hidden(self, bsz):
            weight = next(self.parameters())
            return (weight.new_zeros(self.nlayers, bsz, self.nhid), weight.new_zeros(self.nlayers, bsz, self.nhid))

    return {"model": RNNModel()}


def make_step(torch, models):
    model = models["model"]
    criterion = torch.nn.NLLLoss()
    lr, clip = 1.0, 0.25
    model.hidden = model.init_hidden(4)

    def repackage_hidden(h):
        if isinstance(h, torch.Tensor):
            return h.detach()
        return tuple(repackage_hidden(v) for v in h)

    def train_step(data, targets):
        model.train()
        hidden = repackage_hidden(model.hidden)
        model.zero_grad()
        output, model.hidden = model(data, hidden)
        loss = criterion(output, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        for p in model.parameters():
            p.data.add_(p.grad, alpha=-lr)
        return loss

    return train_step


def make_data(torch):
    source = torch.randint(0, 50, (40, 4))
    return [(source[i:i + 8], source[i + 1:i + 9].reshape(-1)) for i in range(0, 24, 8)]
