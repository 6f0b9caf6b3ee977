"""Transformer language model (the nn.Transformer language-modeling tutorial, small): Embedding, sinusoidal
positional encoding, TransformerEncoder with a causal mask, CrossEntropyLoss, SGD, gradient clipping."""
import math


def build_models(torch):
    nn = torch.nn

    class PositionalEncoding(nn.Module):
        def __init__(self, d_model, max_len=64):
            super().__init__()
            position = torch.arange(max_len).unsqueeze(1)
            div_term = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
            pe = torch.zeros(max_len, 1, d_model)
            pe[:, 0, 0::2] = torch.sin(position * div_term)
            pe[:, 0, 1::2] = torch.cos(position * div_term)
            self.register_buffer("pe", pe)

        def forward(self, x):
            return x + self.pe[:x.size(0)]

    class TransformerModel(nn.Module):
        def __init__(self, ntoken=40, d_model=16, nhead=2, d_hid=32, nlayers=2):
            super().__init__()
            self.pos_encoder = PositionalEncoding(d_model)
            encoder_layers = nn.TransformerEncoderLayer(d_model, nhead, d_hid, dropout=0.0)
            self.transformer_encoder = nn.TransformerEncoder(encoder_layers, nlayers)
            self.embedding = nn.Embedding(ntoken, d_model)
            self.d_model = d_model
            self.linear = nn.Linear(d_model, ntoken)
            initrange = 0.1
            self.embedding.weight.data.uniform_(-initrange, initrange)
            self.linear.bias.data.zero_()
            self.linear.weight.data.uniform_(-initrange, initrange)

        def forward(self, src, src_mask):
            src = self.embedding(src) * math.sqrt(self.d_model)
            src = self.pos_encoder(src)
            output = self.transformer_encoder(src, src_mask)
            return self.linear(output)

    return {"model": TransformerModel()}


def make_step(torch, models):
    model = models["model"]
    criterion = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)

    def train_step(data, targets):
        model.train()
        src_mask = torch.nn.Transformer.generate_square_subsequent_mask(data.size(0))
        output = model(data, src_mask)
        loss = criterion(output.view(-1, output.size(-1)), targets)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        optimizer.step()
        return loss

    return train_step


def make_data(torch):
    source = torch.randint(0, 40, (31, 4))
    return [(source[i:i + 10], source[i + 1:i + 11].reshape(-1)) for i in range(0, 30, 10)]
