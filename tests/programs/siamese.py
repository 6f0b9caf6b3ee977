"""Siamese network (pytorch/examples siamese_network, small): a shared CNN embeds two images, the pair's
features are concatenated into a same/different logit, BCEWithLogitsLoss, Adadelta."""


def build_models(torch):
    nn = torch.nn

    class SiameseNetwork(nn.Module):
        def __init__(self):
            super().__init__()
            self.cnn = nn.Sequential(
                nn.Conv2d(1, 8, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2),
                nn.Conv2d(8, 16, 3), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d((2, 2)),
            )
            self.fc = nn.Sequential(nn.Linear(16 * 4 * 2, 32), nn.ReLU(inplace=True), nn.Linear(32, 1))
            self.sigmoid = nn.Sigmoid()

        def forward_once(self, x):
            output = self.cnn(x)
            return output.view(output.size()[0], -1)

        def forward(self, input1, input2):
            output1 = self.forward_once(input1)
            output2 = self.forward_once(input2)
            output = torch.cat((output1, output2), 1)
            return self.fc(output)

    return {"model": SiameseNetwork()}


def make_step(torch, models):
    model = models["model"]
    criterion = torch.nn.BCEWithLogitsLoss()
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)

    def train_step(images_1, images_2, targets):
        optimizer.zero_grad()
        outputs = model(images_1, images_2).squeeze()
        loss = criterion(outputs, targets)
        loss.backward()
        optimizer.step()
        return loss

    return train_step


def make_data(torch):
    return [(torch.randn(8, 1, 14, 14), torch.randn(8, 1, 14, 14), torch.randint(0, 2, (8,)).float())
            for _ in range(3)]
