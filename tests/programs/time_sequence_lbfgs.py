"""Time-sequence prediction (pytorch/examples time_sequence_prediction, small): two LSTMCells unrolled over
sine waves in double precision, MSELoss, LBFGS with a closure."""


def build_models(torch):
    nn = torch.nn

    class Sequence(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm1 = nn.LSTMCell(1, 12)
            self.lstm2 = nn.LSTMCell(12, 12)
            self.linear = nn.Linear(12, 1)

        def forward(self, input):
            outputs = []
            h_t = torch.zeros(input.size(0), 12, dtype=torch.double)
            c_t = torch.zeros(input.size(0), 12, dtype=torch.double)
            h_t2 = torch.zeros(input.size(0), 12, dtype=torch.double)
            c_t2 = torch.zeros(input.size(0), 12, dtype=torch.double)
            for input_t in input.split(1, dim=1):
                h_t, c_t = self.lstm1(input_t, (h_t, c_t))
                h_t2, c_t2 = self.lstm2(h_t, (h_t2, c_t2))
                outputs.append(self.linear(h_t2))
            return torch.cat(outputs, dim=1)

    return {"seq": Sequence().double()}


def make_step(torch, models):
    seq = models["seq"]
    criterion = torch.nn.MSELoss()
    optimizer = torch.optim.LBFGS(seq.parameters(), lr=0.8, max_iter=4)

    def train_step(input, target):
        def closure():
            optimizer.zero_grad()
            out = seq(input)
            loss = criterion(out, target)
            loss.backward()
            return loss
        return optimizer.step(closure)

    return train_step


def make_compiled_step(torch, models, compile):
    """How a user compiles an LBFGS step: `LBFGS.step` branches on loss values (its line search),
    so the closure — zero_grad, forward, loss, backward — is the compiled function."""
    seq = models["seq"]
    criterion = torch.nn.MSELoss()
    optimizer = torch.optim.LBFGS(seq.parameters(), lr=0.8, max_iter=4)

    @compile
    def loss_and_grad(input, target):
        optimizer.zero_grad()
        loss = criterion(seq(input), target)
        loss.backward()
        return loss

    def train_step(input, target):
        return optimizer.step(lambda: loss_and_grad(input, target))

    return train_step


def make_data(torch):
    x = torch.arange(12, dtype=torch.double).unsqueeze(0) + torch.randint(-4, 4, (6, 1)).double() * 2
    data = torch.sin(x / 2.0)
    return [(data[:, :-1], data[:, 1:])]
